from ..quiz import Question

QUESTIONS = [
    Question("10.1", "An A/B test is checked every day and stopped at the first p < 0.05. Compared with a "
             "pre-registered horizon, its false-positive rate is…",
             options=("the same, 5 %", "lower than 5 %", "higher than 5 %"), answer=2,
             why="Each look is another chance for noise to cross the line; the chapter's simulation measures "
                 "how much higher, and a sequential test or a fixed horizon fixes it."),
    Question("10.2", "Inverse propensity scoring estimates a new policy's click rate from a logging policy's "
             "data. When does its variance explode?",
             options=("When the logging policy shows the items the new policy picks only rarely",
                      "When the two policies are identical", "When clicks are frequent",
                      "Never: IPS is unbiased"),
             answer=0, why="IPS weights each click by π_new / π_log; tiny logging probabilities give huge weights. "
                           "Self-normalised IPS trades a little bias for much less variance."),
    Question("10.3", "With a position-bias click model, the probability of a click at position k is "
             "P(examine k) × P(click | examined). A slate shows the same item first or fifth. What changes?",
             options=("P(click | examined)", "P(examine k)", "Both", "Neither"), answer=1,
             why="Relevance does not change with position; attention does. Logs therefore under-count clicks on "
                 "items shown low, which off-policy methods must correct."),
    Question("10.4", "A model retrained only on the clicks of its own recommendations, round after round, "
             "without exploration, tends to…",
             options=("spread exposure over more of the catalogue",
                      "concentrate exposure on fewer items (higher Gini of exposure)",
                      "recover the users' true tastes exactly"),
             answer=1, why="It only learns about what it showed; exploration (ε-greedy, Thompson) keeps feeding "
                           "it evidence about the rest."),
    Question("10.5", "ESMM predicts pCTR and pCVR with two towers on shared embeddings. Which labels and which "
             "impressions train its CVR tower?",
             options=("purchases on the clicked impressions only, like a separate CVR model",
                      "purchases, through the product pCTR × pCVR, on all impressions",
                      "clicks on all impressions",
                      "nothing: pCVR is computed as pCTCVR / pCTR after training"),
             answer=1,
             why="ESMM fits pCTR to the clicks and pCTCVR = pCTR × pCVR to the purchases, both over the entire "
                 "impression space, so pCVR is learned where it is used (every candidate) instead of only on the "
                 "selected, sparse clicked sample; the chapter measures the clicked-only model's bias against the "
                 "simulator's true conversion probabilities."),
    Question("10.6", "Tastes drift and a monitor computes the PSI of the clicked categories against the data the "
             "model last learned from. What does the chapter's drift-triggered strategy do when it crosses 0.1?",
             options=("retrain from scratch on all data ever logged", "fine-tune the current model on the latest "
                      "round's log (a warm start)", "roll back to the first model", "nothing until PSI > 1"),
             answer=1,
             why="A short warm-start fine-tuning only when the monitor fires; the chapter counts its training steps "
                 "against a periodic full retraining and a frozen model."),
]
