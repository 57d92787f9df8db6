"""The scripted stand-in's playbook: hand-written text and PuLP models for five of the bundled
sample problems. This is not a model. It exists so that the demo can show the whole pipeline
(real code run in the sandbox, an Intervener cut and hint, selection, training data) offline.

Each entry: `match` (a phrase of the question that identifies it), `style` (how the first
attempt goes wrong, if it does), `plan` (thinking before the code), `code` (the first script)
and, where the first attempt is flawed, `fixed_code` (what it writes after a hint).
"""

from __future__ import annotations

PLAYBOOK: list[dict[str, str]] = [
    {
        "id": "nl4opt-15",
        "match": "scooter or rickshaw",
        "style": "direct",
        "plan": (
            "Let s be the number of scooters and r the number of rickshaws, both non-negative "
            "integers. Capacity: 2s + 3r >= 300. Pollution: r <= 0.4 (s + r). Objective: "
            "minimise s. I will let PuLP solve it.\n"
        ),
        "code": """import pulp
m = pulp.LpProblem("theme_park", pulp.LpMinimize)
s = pulp.LpVariable("scooters", lowBound=0, cat="Integer")
r = pulp.LpVariable("rickshaws", lowBound=0, cat="Integer")
m += s
m += 2 * s + 3 * r >= 300
m += r <= 0.4 * (s + r)
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
print("scooters =", s.value())
print("rickshaws =", r.value())
""",
    },
    {
        "id": "nl4opt-72",
        "match": "vans and trucks",
        "style": "continuous",
        "plan": (
            "Let v be the number of vans and t the number of trucks. Capacity: 50v + 100t >= "
            "2000. Trucks cannot exceed vans: t <= v. Objective: minimise v.\n"
        ),
        "code": """import pulp
m = pulp.LpProblem("shoes", pulp.LpMinimize)
v = pulp.LpVariable("vans", lowBound=0)
t = pulp.LpVariable("trucks", lowBound=0)
m += v
m += 50 * v + 100 * t >= 2000
m += t <= v
m.solve()
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
print("vans =", round(v.value(), 4))
print("trucks =", round(t.value(), 4))
""",
        "fixed_code": """import pulp
m = pulp.LpProblem("shoes", pulp.LpMinimize)
v = pulp.LpVariable("vans", lowBound=0, cat="Integer")
t = pulp.LpVariable("trucks", lowBound=0, cat="Integer")
m += v
m += 50 * v + 100 * t >= 2000
m += t <= v
m.solve()
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
print("vans =", v.value())
print("trucks =", t.value())
""",
    },
    {
        "id": "nl4opt-8",
        "match": "Elm Furniture",
        "style": "by_hand",
        "plan": (
            "Let c be chairs and d dressers, whole pieces. Stain: 1.4c + 1.1d <= 17. Oak: "
            "2c + 3d <= 11. Maximise 43c + 52d. Checking the corner points by hand:\n"
            "4*43 + 1*52 = 224\n5*43 + 0*52 = 215\nso 4 chairs and 1 dresser.\n</think>\n\n"
            "The maximum profit is \\boxed{224}."
        ),
        "direct_plan": (
            "Let c be chairs and d dressers, whole pieces. Stain: 1.4c + 1.1d <= 17. Oak: "
            "2c + 3d <= 11. Maximise 43c + 52d. I will let PuLP solve it.\n"
        ),
        "code": """import pulp
m = pulp.LpProblem("elm", pulp.LpMaximize)
c = pulp.LpVariable("chairs", lowBound=0, cat="Integer")
d = pulp.LpVariable("dressers", lowBound=0, cat="Integer")
m += 43 * c + 52 * d
m += 1.4 * c + 1.1 * d <= 17
m += 2 * c + 3 * d <= 11
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
print("chairs =", c.value())
print("dressers =", d.value())
""",
    },
    {
        "id": "mamo_easy-212",
        "match": "military commander",
        "style": "units_in_box",
        "plan": (
            "Let x and y be the units of X and Y (integers). x + y >= 50 and 5x + 3y <= 200. "
            "Minimise 5000x + 3000y.\n"
        ),
        "code": """import pulp
m = pulp.LpProblem("support", pulp.LpMinimize)
x = pulp.LpVariable("x", lowBound=0, cat="Integer")
y = pulp.LpVariable("y", lowBound=0, cat="Integer")
m += 5000 * x + 3000 * y
m += x + y >= 50
m += 5 * x + 3 * y <= 200
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
print("x =", x.value(), "y =", y.value())
""",
    },
    {
        "id": "mamo_complex-52",
        "match": "night shift schedule",
        "style": "direct",
        "plan": (
            "Let x_j be the nurses starting their five-night stretch on day j (continuous, as "
            "the problem allows). Day i is covered by the nurses who started on days i, i-1, "
            "..., i-4 (cyclically). Minimise the sum of x_j.\n"
        ),
        "code": """import pulp
d = [2, 4, 4, 3, 1, 2, 3]
m = pulp.LpProblem("nurses", pulp.LpMinimize)
x = [pulp.LpVariable(f"x{j + 1}", lowBound=0) for j in range(7)]
m += pulp.lpSum(x)
for i in range(7):
    m += pulp.lpSum(x[(i - k) % 7] for k in range(5)) >= d[i]
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
""",
    },
]
