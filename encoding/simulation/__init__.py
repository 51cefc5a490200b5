"""The built-in simulated music-listening experiment (no downloads): clips, design, responses, ground truth."""

from encoding.simulation.brain import GroundTruth
from encoding.simulation.experiment import SimulationConfig, simulate_experiment
from encoding.simulation.music import GENRES, synthesize_clips

__all__ = ["GENRES", "GroundTruth", "SimulationConfig", "simulate_experiment", "synthesize_clips"]
