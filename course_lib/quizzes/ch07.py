from ..quiz import Question

QUESTIONS = [
    Question("07.1", "A business rule removes out-of-stock items. Where must the filter be applied to return "
             "K items?",
             options=("After taking the top-K", "Before taking the top-K (mask the scores)",
                      "It does not matter"),
             answer=1, why="Filtering after the top-K returns fewer than K items whenever a filtered item was "
                           "in it; masking scores before top-K always fills the list."),
    Question("07.2", "What does an approximate nearest-neighbour index (HNSW, IVF) trade away for speed?",
             options=("Nothing: it is exact", "Some recall: a few true top-K items may be missed",
                      "The ability to mask seen items", "Determinism of the scores"),
             answer=1, why="recall@K against exact search measures what is lost; chapter 07 sweeps it."),
    Question("07.3", "A service's latency percentiles: which number tells you what the slowest 1 % of users wait?",
             options=("the mean", "p50", "p99"), answer=2,
             why="p99 is the latency 99 % of requests beat; the mean hides the tail that users complain about."),
]
