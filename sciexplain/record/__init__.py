"""Recording one forward pass: the tape of operations, and which dim of every recorded tensor holds the samples."""
