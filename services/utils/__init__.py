"""Operator utilities (`autonomys-farmer util ...`, `autonomys-export-piece`)."""
