"""Analyses built on explanations: the practical tricks and prototypes of Montavon et al. (2017), SpRAy and ClArC."""
