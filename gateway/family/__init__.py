"""The family's own actions (issue 13 §7): rating how an incident was handled
(:mod:`gateway.family.ratings`) and away mode, 随家人外出 (:mod:`gateway.family.away`)."""
