from ..quiz import Question

QUESTIONS = [
    Question("08.1", "With 100 sampled negatives, the held-out item ranks among 101 items. What HR@10 does a "
             "*random* ranking get in expectation?",
             answer=10 / 101, rtol=0.001,
             why="The held-out item is equally likely at any of 101 ranks: 10 / 101 ≈ 0.099 — far above what a "
                 "random ranking gets over the full catalogue, which is why sampled metrics flatter models."),
    Question("08.2", "Two models' NDCG@10 differ by 0.003 and the 95 % bootstrap confidence interval of the "
             "paired difference is [−0.002, 0.008]. What can you conclude?",
             options=("Model A is better", "Model B is better",
                      "The data do not show a difference at the 5 % level"),
             answer=2, why="The interval contains 0: the observed gap is within what resampling users produces."),
    Question("08.3", "MMR re-ranking with λ < 1 does what to a top-10 list?",
             options=("Raises accuracy and diversity together",
                      "Trades some relevance for diversity (less similar items)",
                      "Removes popular items", "Sorts by novelty"),
             answer=1, why="MMR scores λ·relevance − (1 − λ)·similarity to items already picked; the Pareto "
                           "front shows the trade."),
]
