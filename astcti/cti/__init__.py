"""The CTI domain: call model, event catalogue, ARI-to-CTI tracking, fan-out to monitors."""
