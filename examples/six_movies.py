"""The six-movie toy as a recommender: a RatingsRBM with two hidden units learns two tastes.

Six movies, two kinds of fans (the classic tiny example of RBM recommendation):

* fantasy / science-fiction fans like Harry Potter, Avatar and LOTR 3 and dislike the rest;
* Oscar-winner fans like LOTR 3, Gladiator and Titanic and dislike the rest;
* nobody likes Glitter.

Not every user has rated every movie: the unrated ones are *missing* ("."), not dislikes, and the
RBM has no visible unit for them.  The like/dislike model (``binary=True``: ratings 1..2 dislike,
3..5 like) with two hidden units is trained on these users; then:

1. each group turns on its own hidden unit;
2. a new user who likes two fantasy films (Harry Potter, LOTR 3) and has rated nothing else is
   "folded in" (``recommend(..., ratings=...)``: hidden units from their two ratings, no retraining)
   and gets the third, Avatar, as the top recommendation, ahead of the Oscar winners Gladiator and
   Titanic, which half the users like just as much as Avatar;
3. a new Oscar-winner fan (Gladiator, LOTR 3) gets Titanic.

    python examples/six_movies.py            # prints the table, the hidden units, the recommendations

tests/test_collaborative.py runs ``main`` and checks each claim (over several seeds).
"""
from __future__ import annotations

import numpy as np

from harmonium.collaborative import RatingsRBM

MOVIES = ["Harry Potter", "Avatar", "LOTR 3", "Gladiator", "Titanic", "Glitter"]
FANTASY, OSCAR = "fantasy", "oscar"
# 5 = like, 1 = dislike, 0 = not rated (missing)
USERS = {
    "Alice": (FANTASY, [5, 5, 5, 1, 1, 1]),
    "Bob":   (FANTASY, [5, 0, 5, 1, 0, 1]),
    "Carol": (FANTASY, [5, 5, 0, 0, 1, 1]),
    "Dan":   (FANTASY, [0, 5, 5, 1, 1, 0]),
    "Erin":  (OSCAR,   [1, 1, 5, 5, 5, 1]),
    "Fred":  (OSCAR,   [1, 0, 5, 5, 0, 1]),
    "Gina":  (OSCAR,   [0, 1, 5, 0, 5, 1]),
    "Hank":  (OSCAR,   [1, 1, 0, 5, 5, 0]),
}
CONFIG = dict(n_hidden=2, binary=True, learning_rate=0.1, momentum=0.5, l2=0.0, epochs=1000, batch_size=8)


def triples() -> np.ndarray:
    """(user id, movie id, rating) rows, ids from 1, unrated movies left out."""
    return np.array([(u, m + 1, r) for u, (_, row) in enumerate(USERS.values(), 1)
                     for m, r in enumerate(row) if r], dtype=np.int64)


def main(seed: int = 0, verbose: bool = True) -> dict:
    X = triples()
    rbm = RatingsRBM(random_state=seed, **CONFIG).fit(X)
    hidden = rbm.hidden_probabilities()  # p(h = 1 | the user's ratings), rows in user-id order
    groups = [g for g, _ in USERS.values()]
    fantasy_fan = rbm.recommend(None, n=4, ratings=[(1, 5), (3, 5)])   # likes Harry Potter, LOTR 3
    oscar_fan = rbm.recommend(None, n=4, ratings=[(4, 5), (3, 5)])     # likes Gladiator, LOTR 3
    out = {"hidden": hidden, "groups": groups,
           "fantasy_fan": [(MOVIES[i - 1], p) for i, p in fantasy_fan],
           "oscar_fan": [(MOVIES[i - 1], p) for i, p in oscar_fan],
           "model": rbm}
    if verbose:
        print("ratings (5 like, 1 dislike, . not rated) and p(h | ratings):")
        print(f"{'':8s}" + " ".join(f"{m[:8]:>8s}" for m in MOVIES) + "   h1     h2")
        for (name, (g, row)), h in zip(USERS.items(), hidden):
            print(f"{name:8s}" + " ".join(f"{(str(r) if r else '.'):>8s}" for r in row)
                  + f"   {h[0]:.3f}  {h[1]:.3f}  ({g})")
        for label, rec in (("likes Harry Potter and LOTR 3", out["fantasy_fan"]),
                           ("likes Gladiator and LOTR 3", out["oscar_fan"])):
            print(f"new user who {label}: " + ", ".join(f"{m} (p(like) {p:.2f})" for m, p in rec))
    return out


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # a tiny model: one thread is fastest
    main()
