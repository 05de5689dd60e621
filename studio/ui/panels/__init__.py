"""The left column's panels: each edits a part of the one GenerationRequest."""
