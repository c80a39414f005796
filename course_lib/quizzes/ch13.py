from ..quiz import Question

QUESTIONS = [
    Question("13.1", "Why is scoring every (user, item) pair with a BERT classifier, as the source articles "
             "suggest, not used to rank a whole catalogue?",
             options=("BERT cannot read item titles",
                      "A cross-encoder needs one forward pass per pair: far too slow for every item, so it "
                      "re-ranks a short list from a cheaper model",
                      "Classification losses cannot be trained", "It needs a GPU"),
             answer=1, why="Cross-encoders are accurate but cost a forward pass per candidate; the cascade gives "
                           "them SASRec's top 50."),
    Question("13.2", "Semantic IDs with 3 levels of 256 codes each can name at most how many distinct items "
             "(before a collision-breaking suffix)?",
             answer=256**3, rtol=0.001,
             why="256 × 256 × 256 = 16,777,216 codes; items whose text embeddings fall in the same cell collide, "
                 "which the suffix separates."),
    Question("13.3", "Constrained beam search over a prefix trie of valid semantic IDs guarantees that…",
             options=("the best item is always found", "every generated ID is an existing item",
                      "decoding is faster than scoring all items", "no item is recommended twice"),
             answer=1, why="At each step only tokens that continue a valid prefix are allowed, so the decoder "
                           "cannot write an ID that names no item."),
    Question("13.4", "HSTU replaces the softmax over attention scores with…",
             options=("a pointwise SiLU of the scores (no normalisation over the row)",
                      "a sigmoid over the whole row", "max-pooling", "no attention at all"),
             answer=0, why="Pointwise aggregation keeps the magnitude of how much a user interacted with similar "
                           "items, which a softmax normalises away (Zhai et al., ICML 2024)."),
]
