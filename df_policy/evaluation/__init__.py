"""Offline evaluation of trained policies (replay of recorded episodes through the runtime)."""
