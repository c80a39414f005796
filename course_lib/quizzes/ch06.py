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
    Question("06.4", "BERT4Rec sat on the popularity plateau for minutes. In the chapter's probes, what took it off "
             "within a few hundred steps?",
             options=("A shorter warm-up and a higher peak learning rate",
                      "Hiding more items (mask rate 0.4 instead of 0.2)",
                      "Attention's value and output projections starting at the identity, with attention biased "
                      "towards nearby items",
                      "Starting the output bias at the items' log popularity"),
             answer=2, why="A masked position knows the user only through W_O W_V applied to its context, random at "
                           "the start: a scrambled copy. Pass-through initialisation passes the context on "
                           "unchanged and ALiBi makes it the nearby items; neither alone, nor any of the "
                           "hyper-parameters, did it."),
]
