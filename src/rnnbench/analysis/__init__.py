"""Analyses of trained runs beyond the final NLL: speed of learning, gradient flow, gate use
(issue 13 §2). Each is its own module; :mod:`rnnbench.analysis.units` is where they meet the
unit variants."""
