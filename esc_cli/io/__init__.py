"""Reading and writing user files: images, video, and atomic outputs."""
