from ..quiz import Question

QUESTIONS = [
    Question("12.1", "Training with AdamW in float32: an item table of 10⁶ items × 64 dimensions needs how "
             "many bytes for the weights, their gradients and Adam's two moment tensors together?",
             answer=10**6 * 64 * 4 * 4, rtol=0.001,
             why="4 tensors (weights, gradient, first and second moment) × 10⁶ × 64 × 4 bytes = 1.024 GB; the "
                 "table, not the transformer, dominates at catalogue scale."),
    Question("12.2", "With DistributedDataParallel on N processes, each with batch B, the gradients are "
             "all-reduced as an average. Compared with one process and batch N·B, the learning rate should be…",
             options=("multiplied by N", "divided by N", "unchanged"), answer=2,
             why="The average of N per-process mean gradients equals the mean gradient of the global batch N·B, "
                 "so the update is the same as one process with the same global batch."),
    Question("12.3", "Activation checkpointing saves memory by…",
             options=("storing activations in float16",
                      "not storing some activations and recomputing them in the backward pass",
                      "sharding the optimiser state", "skipping the backward pass"),
             answer=1, why="It trades compute (a second forward through each checkpointed block) for memory."),
    Question("12.4", "A bigger model stops improving NDCG at equal training tokens on ML-1M while loss on the "
             "training data keeps falling. The regime is…",
             options=("compute-limited", "data-limited", "latency-limited"), answer=1,
             why="With 6,040 users there is not enough data to use the extra capacity; scaling curves of "
                 "industrial generative recommenders (HSTU) use billions of interactions."),
]
