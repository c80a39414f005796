from ..quiz import Question

QUESTIONS = [
    Question("05.1", "A warm-up of 100 steps to a peak learning rate of 1e-3 is linear from 0. What is the "
             "learning rate at step 25?",
             answer=1e-3 * 25 / 100, rtol=0.001,
             why="Linear warm-up: lr = peak × step / warm-up steps = 1e-3 × 25 / 100 = 2.5e-4."),
    Question("05.2", "What must a checkpoint hold for a resumed run to continue *exactly* where it stopped?",
             options=("The model weights only",
                      "The weights and the optimiser state",
                      "The weights, the optimiser and scheduler state, the step, and the random-number "
                      "generators' state"),
             answer=2, why="Adam's moments, the schedule's position and the RNG streams (dropout, batches) all "
                           "change what happens next; chapter 05 resumes bit for bit."),
    Question("05.3", "Early stopping watches which quantity?",
             options=("The training loss", "A validation metric on held-out data", "The test metric",
                      "The gradient norm"),
             answer=1, why="Validation, never test: choosing when to stop is a model choice, and the test set must "
                           "not influence any choice."),
]
