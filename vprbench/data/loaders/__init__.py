"""data/loaders"""
