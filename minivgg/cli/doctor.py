"""`minivgg doctor`: is the GPU path usable here, and right (the checks themselves are minivgg.doctor)."""


def cmd_doctor(args):
    from .. import doctor

    return doctor.run(args.device, size=args.size, batch=args.batch)
