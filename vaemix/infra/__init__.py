"""The infrastructure layer: configs, data, input pipelines, checkpoints, strategies, run directories,
TensorBoard summaries and pictures. It uses the maths layer, never the applications above it."""
