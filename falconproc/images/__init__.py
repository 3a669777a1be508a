"""Images: the Pillow pipeline (one decode, many presets), the preset catalog, the
service behind the preset and optimize-for-ai routes, the `image` job and its memory
estimate."""
