"""What is graded: each chapter's exercises, one module a chapter (``ch01`` ... ``ch06``).

A chapter module lists its exercises in ``EXERCISES``; the engine's registry imports it, by
name, the first time one of its exercises is asked for. The case helpers the chapters share
are in :mod:`~segedu.grading.content.cases`.
"""
