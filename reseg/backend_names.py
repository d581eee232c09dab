"""The inference backends' names, without heavy imports: the command line offers them as `--backend` choices
(`reseg predict --help` must not load torch), and reseg.backends, which builds them, takes them from here."""

BACKENDS = ("eager", "onnxruntime", "onnxruntime-int8")
AUTO = "auto"  # measure the backends once per model, input shape and machine; use the fastest that keeps accuracy
CHOICES = (*BACKENDS, AUTO)
# What auto may choose besides BACKENDS: eager under bf16 autocast with channels-last weights, weighed on CPUs
# with native bf16 when no autocast was asked for (by hand it is `--backend eager --amp --channels-last`).
EAGER_BF16 = "eager-bf16"
AUTO_CANDIDATES = (*BACKENDS, EAGER_BF16)
