"""Answers: reading them and comparing them, with no other part of mmfr beneath.

The bottom layer that verification, rewards, pass rates, evaluation and the source adapters all
call: ``extract`` reads the final answer out of a model's response, ``match`` decides whether two
answers are the same, ``parse`` reads a source's own fields (options in a question, the final
answer of a worked solution, the answer type, an option's letter). Pure functions; no mmfr imports.
"""

from mmfr.answers.extract import extract_answer, has_repeated_ngram, has_repetition, last_boxed, split_response
from mmfr.answers.match import ANSWER_TYPES, Tolerance, answers_match, normalize_text, plain_text, to_number
from mmfr.answers.parse import (LETTERS, LONG_ANSWER_WORDS, answer_and_solution, as_choices, detect_answer_type,
                                final_answer, is_long, split_choices, to_letter, unlabelled)

__all__ = ["ANSWER_TYPES", "LETTERS", "LONG_ANSWER_WORDS", "Tolerance", "answer_and_solution", "answers_match",
           "as_choices", "detect_answer_type", "extract_answer", "final_answer", "has_repeated_ngram", "has_repetition",
           "is_long", "last_boxed",
           "normalize_text", "plain_text", "split_choices", "split_response", "to_letter", "to_number",
           "unlabelled"]
