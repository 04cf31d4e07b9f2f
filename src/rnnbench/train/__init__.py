"""The paper's training protocol and population training.

``config`` (one run's :class:`RunConfig`), ``protocol`` (RMSProp, weight noise, clipping, early
stopping on population-stacked tensors), ``population`` (:func:`train_population`),
``checkpoint`` (run folders and resume) and ``metrics`` (the NLL per time step).
"""
