"""Full piece sharded cache role: serves a complete exported history (autonomys-export-piece output)."""
