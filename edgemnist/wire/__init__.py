"""The wire formats, one place for both apps: messages (`messages`), their field checks (`fields`),
metrics parts (`metricparts`), the compiled fast decoder (`fast`), the model envelope
(`envelope`) and scoring-on-request formats (`serving`).
"""
