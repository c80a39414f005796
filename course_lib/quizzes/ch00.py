from ..quiz import Question

QUESTIONS = [
    Question("00.1", "MovieLens-1M has 6,040 users and 3,706 items with interactions. About what share of the "
             "user–item matrix is filled by its 1,000,209 ratings?",
             answer=1_000_209 / (6_040 * 3_706), rtol=0.05,
             why="1,000,209 / (6,040 × 3,706) ≈ 0.045: under 5 % of the cells are known, the rest is what a "
                 "recommender has to guess."),
    Question("00.2", "Why does the course ship a *synthetic* shop dataset beside MovieLens?",
             options=("Because MovieLens is too small to train transformers",
                      "Because its hidden model is known, so a chapter can check that a model recovers "
                      "planted structure",
                      "Because synthetic data always gives higher NDCG",
                      "Because real shops do not have categories"),
             answer=1, why="With a known generating model (tastes, complement chains, a cold category) a claim "
                           "such as 'the model learned phone → case' can be tested, not just believed."),
    Question("00.3", "Which scale should CI use to execute every notebook?",
             options=("full", "laptop", "smoke"), answer=2,
             why="smoke: tiny slices that run in about a minute, so every cell is exercised; laptop is for "
                 "learners and the committed outputs, full for paper-scale runs."),
]
