from ..quiz import Question

QUESTIONS = [
    Question("06.1", "BERT4Rec masks 20 % of a 50-item history. How many positions does its loss see in that "
             "sequence?",
             answer=0.2 * 50, rtol=0.001,
             why="Only masked positions carry a target: 0.2 × 50 = 10, against 49 for a causal model on the same "
                 "history — one reason masked models learn slower per sequence."),
    Question("06.2", "At inference, how does BERT4Rec predict the *next* item?",
             options=("It reads the history left to right like GPT",
                      "A [MASK] token is appended after the history and the model fills it in",
                      "It scores the last item of the history",
                      "It needs the user's id"),
             answer=1, why="The model learned to fill masks from both sides; appending one mask at the end asks "
                           "it for the next item."),
    Question("06.3", "A brand-new item has no interactions. What can still give it a useful representation?",
             options=("Its item id embedding", "Its text (title, description) through a pretrained language model",
                      "Its position in the catalogue", "Nothing until it is clicked"),
             answer=1, why="An id embedding of an unseen item is untrained; text embeddings (MiniLM) exist from "
                           "day one, which is what cold-start recommendation uses."),
]
