import pickle, sys
for a in sys.argv[1:]:
    d = pickle.load(open(f"/tmp/mono2/{a}.pkl", "rb"))
    pickle.dump([{k: v for k, v in x.items() if k not in ("thumb", "rgb512")} for x in d], open(f"/tmp/mono2/{a}_meta.pkl", "wb"))
