"""Realistic programs of the kind a Reasoner writes: small production LPs, transportation LPs,
facility-location MILPs, scipy linprog / milp, and sympy. Each prints a deterministic result.
Used by bench/exec.py and by the sandbox's correctness test."""

from __future__ import annotations

PRODUCTION_LP = """
import pulp
m = pulp.LpProblem("production", pulp.LpMaximize)
chairs = pulp.LpVariable("chairs", lowBound=0)
tables = pulp.LpVariable("tables", lowBound=0)
m += 45 * chairs + 80 * tables
m += 5 * chairs + 20 * tables <= 400, "wood"
m += 10 * chairs + 15 * tables <= 450, "labor"
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("chairs =", chairs.value(), "tables =", tables.value())
print("Objective:", pulp.value(m.objective))
"""

TRANSPORT_LP = """
import pulp
supply = {"W1": 120, "W2": 80, "W3": 100}
demand = {"S1": 60, "S2": 90, "S3": 70, "S4": 80}
cost = {
    ("W1", "S1"): 4, ("W1", "S2"): 6, ("W1", "S3"): 9, ("W1", "S4"): 5,
    ("W2", "S1"): 5, ("W2", "S2"): 3, ("W2", "S3"): 7, ("W2", "S4"): 8,
    ("W3", "S1"): 6, ("W3", "S2"): 8, ("W3", "S3"): 4, ("W3", "S4"): 6,
}
m = pulp.LpProblem("transport", pulp.LpMinimize)
x = pulp.LpVariable.dicts("ship", cost, lowBound=0)
m += pulp.lpSum(cost[k] * x[k] for k in cost)
for w in supply:
    m += pulp.lpSum(x[(w, s)] for s in demand) <= supply[w]
for s in demand:
    m += pulp.lpSum(x[(w, s)] for w in supply) >= demand[s]
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
"""

FACILITY_MILP = """
import pulp
fixed = {"A": 1000, "B": 1200, "C": 900, "D": 1100}
capacity = {"A": 80, "B": 100, "C": 60, "D": 90}
demand = {"c1": 30, "c2": 25, "c3": 40, "c4": 35, "c5": 20}
cost = {(f, c): 2 + ((ord(f) * 7 + int(c[1:]) * 3) % 9) for f in fixed for c in demand}
m = pulp.LpProblem("facility", pulp.LpMinimize)
y = pulp.LpVariable.dicts("open", fixed, cat="Binary")
x = pulp.LpVariable.dicts("serve", cost, lowBound=0)
m += pulp.lpSum(fixed[f] * y[f] for f in fixed) + pulp.lpSum(cost[k] * x[k] for k in cost)
for c in demand:
    m += pulp.lpSum(x[(f, c)] for f in fixed) == demand[c]
for f in fixed:
    m += pulp.lpSum(x[(f, c)] for c in demand) <= capacity[f] * y[f]
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("open:", sorted(f for f in fixed if y[f].value() > 0.5))
print("Objective:", pulp.value(m.objective))
"""

STAFFING_IP = """
import pulp
need = [7, 11, 9, 5, 8, 12]
m = pulp.LpProblem("staffing", pulp.LpMinimize)
n = [pulp.LpVariable(f"n{t}", lowBound=0, cat="Integer") for t in range(len(need))]
m += pulp.lpSum(n)
for t in range(len(need)):
    m += n[t] + n[t - 1] >= need[t]
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
"""

KNAPSACK = """
import pulp
values = [60, 100, 120, 80, 30, 90, 45, 70]
weights = [10, 20, 30, 15, 5, 25, 12, 18]
m = pulp.LpProblem("knapsack", pulp.LpMaximize)
take = [pulp.LpVariable(f"t{i}", cat="Binary") for i in range(len(values))]
m += pulp.lpSum(v * t for v, t in zip(values, take))
m += pulp.lpSum(w * t for w, t in zip(weights, take)) <= 70
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", pulp.value(m.objective))
"""

DIET_NUMPY = """
import numpy as np
import pulp
cost = np.array([0.6, 0.35, 0.5])
nutrients = np.array([[4, 8, 6], [2, 1, 3], [30, 10, 20]])
minimum = np.array([32, 10, 90])
m = pulp.LpProblem("diet", pulp.LpMinimize)
x = [pulp.LpVariable(f"x{i}", lowBound=0) for i in range(3)]
m += pulp.lpSum(float(c) * v for c, v in zip(cost, x))
for row, lo in zip(nutrients, minimum):
    m += pulp.lpSum(float(a) * v for a, v in zip(row, x)) >= float(lo)
m.solve(pulp.PULP_CBC_CMD(msg=False))
print("Status:", pulp.LpStatus[m.status])
print("Objective:", round(pulp.value(m.objective), 6))
"""

SCIPY_LINPROG = """
from scipy.optimize import linprog
c = [-45, -80]
A = [[5, 20], [10, 15]]
b = [400, 450]
res = linprog(c, A_ub=A, b_ub=b, bounds=[(0, None), (0, None)], method="highs")
print("Status:", res.status)
print("Objective:", round(-res.fun, 6))
"""

SCIPY_MILP = """
import numpy as np
from scipy.optimize import milp, LinearConstraint, Bounds
c = -np.array([60, 100, 120, 80, 30])
A = np.array([[10, 20, 30, 15, 5]])
res = milp(c, constraints=LinearConstraint(A, -np.inf, 50), integrality=np.ones(5), bounds=Bounds(0, 1))
print("Objective:", round(-res.fun, 6))
"""

SYMPY_SOLVE = """
import sympy as sp
x, y = sp.symbols("x y")
sol = sp.solve([5 * x + 20 * y - 400, 10 * x + 15 * y - 450], [x, y])
print("vertex:", sol[x], sol[y])
print("Objective:", 45 * sol[x] + 80 * sol[y])
"""

PURE_PYTHON = """
best = max((3 * a + 5 * b, a, b) for a in range(41) for b in range(21) if 2 * a + 4 * b <= 100 and a + 3 * b <= 60)
print("Objective:", best[0])
"""

PROGRAMS = {
    "production_lp": PRODUCTION_LP,
    "transport_lp": TRANSPORT_LP,
    "facility_milp": FACILITY_MILP,
    "staffing_ip": STAFFING_IP,
    "knapsack": KNAPSACK,
    "diet_numpy": DIET_NUMPY,
    "scipy_linprog": SCIPY_LINPROG,
    "scipy_milp": SCIPY_MILP,
    "sympy_solve": SYMPY_SOLVE,
    "pure_python": PURE_PYTHON,
}

#: The benchmark mix: mostly PuLP (what the Reasoner writes), some numpy/scipy/sympy.
MIX = [
    "production_lp",
    "transport_lp",
    "facility_milp",
    "staffing_ip",
    "knapsack",
    "production_lp",
    "transport_lp",
    "facility_milp",
    "diet_numpy",
    "scipy_linprog",
    "scipy_milp",
    "sympy_solve",
    "pure_python",
    "knapsack",
    "staffing_ip",
    "transport_lp",
]
