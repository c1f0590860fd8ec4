"""Run a small study and read its findings (what `tokenprint study` does, without files).

Run: python api_study.py
"""

from tokenprint.catalog import load_catalog
from tokenprint.report.headline import headline, title
from tokenprint.report.study import StudyConfig, run_study

cat = load_catalog()
cfg = StudyConfig(models=["llama-3.2-1b"], gpus=["t4", "l4"], regions=["FR", "PL"],
                  batches=[1, 8, 32])
res = run_study(cfg, cat)

print(title(res))
for sentence in headline(res):
    print("-", sentence)
print(f"{len(res.findings)} findings; the first: {res.findings[0].sentence}")
best = res.carbon.nsmallest(1, "total_g_per_1k").iloc[0]
print(f"lowest: {best['gpu']} in {best['region']} at batch {best['batch']}, "
      f"{best['total_g_per_1k'] * 1e3:.3g} mg CO2e per 1k output tokens")
