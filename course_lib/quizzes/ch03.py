from ..quiz import Question

QUESTIONS = [
    Question("03.1", "Why are attention scores divided by √d_k before the softmax?",
             options=("To make attention cheaper to compute",
                      "Dot products of d_k-dimensional random vectors have variance ∝ d_k; unscaled, the softmax "
                      "saturates and its gradients vanish",
                      "To normalise the values V",
                      "Because the keys are not normalised to length 1 by LayerNorm"),
             answer=1, why="With unit-variance entries, q·k has variance d_k; dividing by √d_k brings it back to 1, "
                           "keeping the softmax in its sensitive range."),
    Question("03.2", "A causal mask is applied by adding a matrix to the scores before the softmax. What value "
             "goes in the masked (future) positions?",
             options=("0", "1", "−∞ (or a very large negative number)", "NaN"), answer=2,
             why="exp(−∞) = 0, so the future gets zero weight; adding 0 would change nothing, and a row with "
                 "every entry −∞ must be handled (it would give NaN)."),
    Question("03.3", "For one head, a sequence of T = 200 positions: how many query–key scores does one "
             "attention layer compute per sequence?",
             answer=200 * 200, rtol=0.001,
             why="Every query meets every key: T² = 40,000 scores; that is the O(T²·d) cost of attention."),
    Question("03.4", "Without positional encodings, what does self-attention do to a shuffled history?",
             options=("It gives each position the same outputs as before, permuted the same way (it is order-blind)",
                      "It raises an error",
                      "It sorts the history back into order",
                      "It gives exactly the same output at every position"),
             answer=0, why="Attention is permutation-equivariant: order enters only through the positions added "
                           "to the embeddings."),
]
