"""raygent.evaluation: tool-use evaluation (docs/evaluation.md).

- `bfcl`, `ast_checker`, `runner`: BFCL v4 categories read from the bfcl-eval wheel's data, checked
  with BFCL's AST rules, run through a raygent chat model in-process or on N Ray actors
  (`raygent eval bfcl`).
- `msagent`, `trajectories`: MSAgent-Bench records, Action EM / Argument F1 / ROUGE-L, and the export
  of stored sessions as training trajectories (`raygent eval trajectories`, `raygent eval export-sessions`).
"""
