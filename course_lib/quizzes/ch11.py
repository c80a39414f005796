from ..quiz import Question

QUESTIONS = [
    Question("11.1", "Two explanations of the same recommendation disagree. How does the chapter decide which one "
             "is faithful to the model?",
             options=("The one whose top items look most plausible to a person",
                      "The one whose top-ranked items, when removed, lower the recommended item's score fastest",
                      "The one with the largest attribution values",
                      "Attention weights, because the model computes them"),
             answer=1, why="Faithfulness is measured by intervening on the model (deletion curves against a random "
                           "order), not by how convincing the explanation looks."),
    Question("11.2", "A MovieLens release has no names. Why can users still be re-identified?",
             options=("Zip code, age bracket and gender together are unique for many users",
                      "The user ids are phone numbers", "Ratings are encrypted badly",
                      "They cannot: removing names is enough"),
             answer=0, why="Quasi-identifiers combine into small equivalence classes; k-anonymity by generalisation "
                           "enlarges the classes at a cost in information. Interaction logs alone identify people "
                           "too (a few films and dates suffice)."),
    Question("11.3", "DP-SGD trains with a smaller ε. What happens, all else equal?",
             options=("More noise per step, lower utility, and a smaller bound on membership-inference advantage",
                      "Less noise and higher utility", "Nothing changes except the reported number",
                      "The model becomes exactly private (ε = 0) after enough epochs"),
             answer=0, why="σ grows as ε shrinks; the guarantee bounds any attacker's TPR − FPR by "
                           "(e^ε − 1 + 2δ)/(e^ε + 1)."),
    Question("11.4", "Federated averaging with clients whose data come from different categories (non-IID) tends "
             "to…",
             options=("converge exactly like centralised training",
                      "learn more slowly, because each client's local steps drift towards its own data",
                      "send fewer bytes per round than IID clients"),
             answer=1, why="Client drift: the average of models that moved in different directions is a worse step "
                           "than one model trained on the mixed data. Bytes per round depend only on the model size "
                           "and the number of clients."),
    Question("11.5", "An exposure-constrained re-ranking guarantees the long tail a minimum share of position-weighted "
             "exposure. What does it cost, and how is that measured?",
             options=("Nothing: fairness is free",
                      "Some NDCG@10, measured by evaluating the re-ranked lists on the same held-out items",
                      "Training time, because the model must be retrained"),
             answer=1, why="The re-ranking moves relevant head items down; the chapter prices each constraint in "
                           "NDCG@10 next to its gain in exposure parity."),
]
