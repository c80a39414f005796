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
    Question("13.5", "A generative recommender returns 20 beams; after removing items the user has already seen, "
             "12 remain and the test item is not among them. What does this chapter count for that user's HR@10?",
             options=("a hit if the test item's score ties with the last listed item",
                      "0: an item the beams did not generate is a miss",
                      "the HR@10 of SASRec for that user", "the user is left out of the average"),
             answer=1, why="TIGER's list is what it generated (seen items removed, cut at 10); ranking the unscored "
                           "rest at -inf would let ties put arbitrary items, possibly the target, into a short list."),
    Question("13.6", "In an RQ-VAE, the code index is an argmin, which has no gradient. How does the decoder's "
             "loss still train the encoder?",
             options=("it does not: the encoder is frozen", "the straight-through estimator copies the gradient "
                      "at the quantised vector to the encoder's output", "the argmin is replaced by a softmax at "
                      "test time", "the codebooks are fixed k-means centroids"),
             answer=1, why="x̂ = D(z + sg(ẑ − z)): forward uses ẑ, backward treats the quantiser as the identity; "
                           "codebook and commitment terms train the codes and keep z close to them."),
]
