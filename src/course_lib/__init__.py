"""course_lib: the library behind the course "Pre-training and Fine-tuning".

Three layers; a module imports only from its own layer or the layers below it, never in a cycle.

- **chapters**, one concept each, named after its chapter: ``cnn``, ``autoencoder``,
  ``contrastive``, ``word2vec``, ``bert``, ``gpt``, ``kmeans``, ``finetune``, ``deploy`` and
  ``serve`` (the deployment chapter: export and quantisation, the HTTP service).
- **infrastructure** the chapters share: ``settings`` (every environment variable, one rule; the
  chapters' ci/full presets), ``device`` (device, seed, the notebooks' ``setup``), ``data``
  (verified datasets), ``train`` (the fit loop, the optimiser and schedule builders),
  ``distributed`` (DDP primitives), ``launch`` (torchrun commands, demo, launcher), ``probe``
  (the linear probe of frozen features), ``viz``, ``quiet`` (third-party start-up noise silenced at
  its source).
- **tooling** for the book and the instructors: ``book`` (build, glue, Colab links), ``claims``
  (a chapter's conclusions checked on its own run), ``colab`` (the Colab/Jupyter editions and
  their install cells), ``grading`` (student versions, autograders).
"""
