import torch, torch.nn as nn, torch.nn.functional as F

class Net(nn.Module):
    def __init__(s, ch=(16, 32, 48, 64)):
        super().__init__()
        c0, c1, c2, c3 = ch
        s.c1 = nn.Conv2d(5, c0, 3, 2, 1); s.b1 = nn.BatchNorm2d(c0)
        s.c2 = nn.Conv2d(c0, c1, 3, 2, 1); s.b2 = nn.BatchNorm2d(c1)
        s.c3 = nn.Conv2d(c1, c2, 3, 2, 1); s.b3 = nn.BatchNorm2d(c2)
        s.c4 = nn.Conv2d(c2, c3, 3, 1, 1); s.b4 = nn.BatchNorm2d(c3)
        s.f1 = nn.Linear(2 * c3, 32); s.f2 = nn.Linear(32, 1)
    def forward(s, x):
        x = F.relu(s.b1(s.c1(x))); x = F.relu(s.b2(s.c2(x))); x = F.relu(s.b3(s.c3(x))); x = F.relu(s.b4(s.c4(x)))
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return s.f2(F.relu(s.f1(x)))[:, 0]

