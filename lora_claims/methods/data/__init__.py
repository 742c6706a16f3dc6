"""GLUE task files and LM-BFF few-shot splits."""
