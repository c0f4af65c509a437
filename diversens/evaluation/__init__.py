"""Evaluation on the held-out creative tasks: task scores, length-aware diversity (ΔDD), report."""
