"""Experiments of the paper that span several training runs."""
