"""The applications layer: training, evaluation, and the toolkit's command-line tasks.

Modules here turn a typed config into work, using the maths and the infrastructure below them.
"""
