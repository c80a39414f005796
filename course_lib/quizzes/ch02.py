from ..quiz import Question

QUESTIONS = [
    Question("02.1", "An embedding table for 3,706 items plus one padding row, 64 dimensions, in float32: how "
             "many bytes do its weights take?",
             answer=3_707 * 64 * 4, rtol=0.001,
             why="(3,706 + 1) rows × 64 columns × 4 bytes = 948,992 bytes ≈ 0.95 MB; Adam keeps two more "
                 "tensors of the same size during training."),
    Question("02.2", "Which optimiser keeps a running average of squared gradients *and* of gradients, with "
             "bias correction for both?",
             options=("SGD", "SGD with momentum", "RMSprop", "Adam"), answer=3,
             why="Adam = momentum (first moment) + RMSprop (second moment), each divided by (1 − βᵗ) to undo "
                 "the bias of starting at zero."),
    Question("02.3", "Why do LSTMs and GRUs train better than a plain RNN on long histories?",
             options=("They have fewer parameters",
                      "Their gates give the gradient an additive path through time, so it vanishes more slowly",
                      "They look at the whole sequence at once, like attention",
                      "They do not need backpropagation"),
             answer=1, why="The cell state (LSTM) or interpolation (GRU) is updated additively, so gradients are "
                           "not multiplied by the same matrix at every step."),
]
