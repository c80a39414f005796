from ..quiz import Question

QUESTIONS = [
    Question("09.1", "A price feature is standardised with the mean and standard deviation of *all* "
             "interactions, test included. What is wrong?",
             options=("Nothing: more data gives better statistics",
                      "Statistics of the test period leak into training; fit them on training data only",
                      "Prices should never be standardised",
                      "It makes the model slower"),
             answer=1, why="Any statistic computed with test data is information from the future; the chapter "
                           "measures what such a leak is worth."),
    Question("09.2", "A two-tower model trained with in-batch negatives sees popular items as negatives more "
             "often. What does the log-Q correction subtract from each logit?",
             options=("The item's price", "log of the item's probability of appearing in a batch",
                      "The user's history length", "The dot product of the two towers"),
             answer=1, why="In-batch sampling draws negatives ∝ popularity; subtracting log Q(item) undoes that "
                           "bias so the model learns preference, not popularity."),
    Question("09.3", "Why can a two-tower model serve a catalogue of millions with an ANN index, while a DCN-v2 "
             "ranker cannot?",
             options=("DCN-v2 has more parameters",
                      "Two towers score by a dot product of separately computed vectors, which an index can search; "
                      "a cross network mixes user and item features, so each pair needs its own forward pass",
                      "DCN-v2 cannot use item ids", "Two towers do not need training"),
             answer=1, why="That is why the cascade retrieves with two towers and ranks only the few hundred "
                           "retrieved candidates with the feature-crossing model."),
    Question("09.4", "An item never seen in training has no trained id embedding. In a two-tower model with "
             "text and category features, what still gives it a useful vector?",
             options=("Nothing", "Its features and text through the item tower", "Its position in the catalogue",
                      "The user tower"),
             answer=1, why="The item tower maps features and text, which a new item has from day one, into the "
                           "same space as trained items."),
    Question("09.5", "Counted over the whole log, a global item-popularity feature barely changes a popularity "
             "ranking, while a per-user category profile counted over the whole log flatters offline NDCG "
             "clearly. Why the difference?",
             options=("The profile leak is bigger in total",
                      "Each held-out purchase adds one count to an item bought dozens of times, the same for every "
                      "user; in the profile, the user's own test item lands in that user's profile",
                      "Popularity features cannot leak",
                      "NDCG ignores popularity"),
             answer=1, why="Both leaks add exactly one count per held-out purchase; what matters is where it lands. "
                           "A per-user (or per-session) statistic computed over the whole log tells each user's "
                           "model about that user's own future."),
]
