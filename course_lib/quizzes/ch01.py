import math

from ..quiz import Question

QUESTIONS = [
    Question("01.1", "The held-out item is at rank 3 of the full ranking (1 = top). What is NDCG@10 for this "
             "user under leave-one-out (one relevant item)?",
             answer=1 / math.log2(3 + 1), rtol=0.01,
             why="With one relevant item the ideal DCG is 1, so NDCG = 1 / log2(rank + 1) = 1 / log2(4) = 0.5."),
    Question("01.2", "Why does the course use a *chronological* leave-one-out split rather than a random one?",
             options=("It is faster to compute",
                      "A random split lets the model train on a user's future and test on their past",
                      "Random splits cannot be used with implicit feedback",
                      "It gives every user the same number of test items by accident"),
             answer=1, why="Recommendation predicts the next item; holding out each user's last interaction "
                           "keeps the future out of training."),
    Question("01.3", "A model is evaluated without masking the items the user has already interacted with. "
             "What usually happens to its measured NDCG for next-item prediction?",
             options=("It goes up, because seen items are easy to rank high",
                      "It goes down, because seen items crowd the held-out item out of the top-K",
                      "Nothing: masking only changes speed"),
             answer=1, why="Seen items score high (the model learned them) and take top-K slots, so the held-out "
                           "next item drops; chapter 07 measures the size of this effect."),
    Question("01.4", "EASE fits its item–item weight matrix in closed form. For a catalogue of n items, what is "
             "the size of the matrix it inverts?",
             options=("n_users × n_users", "n_items × n_items", "n_users × n_items",
                      "d × d, with d the embedding size"),
             answer=1, why="EASE inverts the n × n item Gram matrix XᵀX + λI, which is why it is fast on "
                           "MovieLens (3,706 items) and impractical for 10⁸ items."),
]
