"""Teachers: write a CoT or CoD solution for a problem (reference, Gemini, local model)."""
