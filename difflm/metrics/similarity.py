"""Text similarity for records that are free text (code, tool descriptions): token sets, exact Jaccard between
two collections as one sparse matrix product, near copies, and diversity (distinct n-grams, pairwise similarity).
"""

import re

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text):
    """Identifiers, numbers and single punctuation marks, in order."""
    return TOKEN.findall(text)


def token_sets(texts, vocabulary):
    """A binary sparse matrix (texts x vocabulary) of which tokens each text contains; grows `vocabulary`."""
    rows, cols = [], []
    for row, text in enumerate(texts):
        for token in set(tokens(text)):
            rows.append(row)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    return rows, cols


def jaccard_matrix(queries, references):
    """Jaccard similarity of the token sets of every query text with every reference text (dense, q x r)."""
    vocabulary = {}
    q_rows, q_cols = token_sets(queries, vocabulary)
    r_rows, r_cols = token_sets(references, vocabulary)
    shape = len(vocabulary)
    q = sparse.csr_matrix((np.ones(len(q_rows)), (q_rows, q_cols)), shape=(len(queries), shape))
    r = sparse.csr_matrix((np.ones(len(r_rows)), (r_rows, r_cols)), shape=(len(references), shape))
    intersection = (q @ r.T).toarray()
    union = np.asarray(q.sum(1)) + np.asarray(r.sum(1)).T - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nearest_similarity(queries, references, chunk=512):
    """For each query, its highest Jaccard similarity to any reference (chunked to bound memory)."""
    if not references:
        return np.zeros(len(queries))
    return np.concatenate([jaccard_matrix(queries[start:start + chunk], references).max(1)
                           for start in range(0, len(queries), chunk)]) if queries else np.zeros(0)


def copy_rates(synthetic, train, near=0.8):
    """{"exact_copy_rate": share of synthetic texts equal to a training text (after `str.strip`),
    "near_copy_rate": share whose token-set Jaccard with some training text is at least `near`}."""
    seen = {text.strip() for text in train}
    exact = float(np.mean([text.strip() in seen for text in synthetic])) if synthetic else None
    similarity = nearest_similarity(list(synthetic), list(train))
    return {"exact_copy_rate": exact, "near_copy_rate": float(np.mean(similarity >= near)) if synthetic else None,
            "near_copy_threshold": near}


def distinct_n(texts, n):
    """Distinct n-grams of tokens over all n-grams in the collection (1: every n-gram different)."""
    grams = [tuple(seq[i:i + n]) for seq in map(tokens, texts) for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def mean_pairwise_similarity(texts, max_texts=500, seed=0):
    """Mean token-set Jaccard between distinct texts of the collection (lower: more diverse); a random subset of
    `max_texts` bounds the cost."""
    texts = list(texts)
    if len(texts) > max_texts:
        texts = [texts[i] for i in np.random.default_rng(seed).choice(len(texts), max_texts, replace=False)]
    if len(texts) < 2:
        return None
    matrix = jaccard_matrix(texts, texts)
    return float(matrix[~np.eye(len(texts), dtype=bool)].mean())


def diversity(texts):
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "distinct_4": distinct_n(texts, 4),
            "pairwise_similarity": mean_pairwise_similarity(texts)}
