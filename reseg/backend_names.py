"""The inference backends' names, without heavy imports: the command line offers them as `--backend` choices
(`reseg predict --help` must not load torch), and reseg.backends, which builds them, takes them from here."""

BACKENDS = ("eager", "onnxruntime", "onnxruntime-int8")
AUTO = "auto"  # measure the backends once per model, input shape and machine; use the fastest that keeps accuracy
CHOICES = (*BACKENDS, AUTO)
