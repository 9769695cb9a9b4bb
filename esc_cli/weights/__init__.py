"""Checkpoint files, the model catalog and the Hugging Face Hub."""
