"""The stages, one package each: ``prepare`` (clips -> stacks), ``train`` (stacks -> a model, and its
evaluation), ``grid`` (the interval x backbone benchmark), ``serve`` (predict, live, export) and ``journal``
(the web app). Each stage's ``cli`` module only parses arguments and prints; nothing else imports it."""
