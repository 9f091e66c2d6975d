"""Class activation maps for graftcv classifiers: methods by name (`methods`), maps (`cams`, `pipeline`), their
quality (`quality`), target layers (`layers`) and pictures (`render`)."""
