from ..quiz import Question

QUESTIONS = [
    Question("04.1", "SASRec trains on every position of a history at once. Why can it do that without "
             "leaking the answer?",
             options=("Because the targets are shuffled",
                      "The causal mask lets position t attend only to items 1..t, so its target t+1 is unseen",
                      "Because dropout hides the future",
                      "It cannot: SASRec trains one prefix at a time"),
             answer=1, why="One forward pass gives T predictions, each from the prefix that ends at its position."),
    Question("04.2", "Which loss lets the right item compete with *every* item in the catalogue?",
             options=("BCE with one sampled negative (the SASRec paper)",
                      "Sampled softmax with 100 negatives",
                      "Full softmax cross-entropy over all items (SASRec+)"),
             answer=2, why="The full cross-entropy normalises over all items; sampled losses see only a few "
                           "competitors and need a correction (log-Q) for popularity."),
    Question("04.3", "GRU4Rec and SASRec both read histories in order. Which one can attend directly from the "
             "last position to an item 50 steps back?",
             options=("GRU4Rec", "SASRec", "Both", "Neither"), answer=1,
             why="Attention connects any two positions in one step; a GRU must carry the information through "
                 "50 state updates."),
]
