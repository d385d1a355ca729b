"""The PBX side: Asterisk links reached over ARI. Nothing outside this package knows ARI's wire form."""
