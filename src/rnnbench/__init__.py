"""rnnbench: train and compare recurrent units (tanh RNN, LSTM, GRU) on sequence modeling."""

__version__ = "0.1.0"
