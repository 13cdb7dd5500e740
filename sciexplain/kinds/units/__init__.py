"""Units: model parts explained as one node on the tape by a registered propagator (Fisher vectors, fused LSTM layers, recurrent initial states)."""
